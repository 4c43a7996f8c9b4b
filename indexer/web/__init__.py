"""The web layer: `indexer serve` (FastAPI + uvicorn) and `indexer export --format html`
(the same Jinja2 templates as static files). Imported only by those two commands: the search
path never loads FastAPI, pydantic or Jinja2."""
