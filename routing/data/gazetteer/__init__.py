"""Gazetteer of Karlovarský kraj (RÚIAN parts of municipalities, aliases); see README.md here."""
