"""End-to-end tests: real uvicorn processes, real signals, real HTTP."""
