"""The ASGI apps the e2e tests serve with uvicorn, one module each."""
