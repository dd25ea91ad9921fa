"""The HTTP surface of the operator: probes now, the status API as it grows.

Read-only: nothing here writes to the cluster or decides anything.
"""

from collections.abc import Callable

from fastapi import FastAPI, Response


def create_app(*, ready: Callable[[], bool]) -> FastAPI:
    """The FastAPI app; ``ready`` tells ``/readyz`` whether the operator has synced."""
    app = FastAPI(title="Leitstand", summary="Read-only status of the Leitstand GPU scheduler.")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(response: Response) -> dict[str, str]:
        if ready():
            return {"status": "ok"}
        response.status_code = 503
        return {"status": "starting"}

    return app
