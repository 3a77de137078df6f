"""quota_ext FastAPI example (seed 003)."""
