"""The ``izs`` command and the demo: the top of the house, above both :mod:`intake` (the domain, services
and composition root) and :mod:`api` (REST, live socket, consoles).

They live here, not in :mod:`intake`, because they wire the API server and its user management to a
centre: nothing in :mod:`intake` imports :mod:`api`, and the dependency arrows all point down.
"""
