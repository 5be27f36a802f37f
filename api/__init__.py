"""FastAPI app: REST, live event stream and the consoles. Thin: it calls intake services only."""
