"""Server-side integrations: WSGI and ASGI middleware, Flask and FastAPI (imported as
``tracekit.flask``, ``tracekit.fastapi``, ``tracekit.wsgi`` and ``tracekit.asgi``)."""
