"""The HTTP surface of the operator: probes, /metrics (added by the caller) and the status API.

Read-only: nothing here writes to the cluster or decides anything. The status
API authenticates bearer tokens with TokenReview and authorises with
SubjectAccessReview, so users see exactly what RBAC lets them: jobs of the
namespaces where they may ``list trainingjobs``; queues, the cluster and the
snapshot only with the right to ``list gpuquotas``. ``/healthz``, ``/readyz``
and ``/metrics`` stay open.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from leitstand.api import ui, views
from leitstand.core import dumps, model

JobBodies = Callable[[], Sequence[Mapping[str, Any]]]


class Named(Protocol):
    @property
    def name(self) -> str: ...


CallerT = TypeVar("CallerT", bound=Named)


class Reviewer(Protocol[CallerT]):
    """Who calls, and may they: the cluster answers (``kube.reviews`` asks it, ``leitstand run`` wires it in).

    A caller is whatever ``authenticate`` returns; the API hands it back to ``allowed`` unchanged.
    """

    async def authenticate(self, token: str) -> CallerT | None:
        """The caller behind a bearer token, or None when the token is not valid."""

    async def allowed(self, caller: CallerT, verb: str, resource: str, *, namespace: str | None = None) -> bool:
        """May ``caller`` ``verb`` ``resource`` of leitstand.dev (in ``namespace``, or cluster-wide)?"""


def create_app(
    *,
    ready: Callable[[], bool],
    latest: Callable[[], model.CycleRecord | None] = lambda: None,
    pod_estimates: Callable[[], Mapping[model.JobKey, str]] = lambda: {},
    trainingjobs: JobBodies = lambda: [],
    reviews: Reviewer[Any] | None = None,
) -> FastAPI:
    """The FastAPI app; ``ready`` tells ``/readyz`` whether the operator has synced."""
    app = FastAPI(
        title="Leitstand",
        summary="Read-only status of the Leitstand GPU scheduler: queues, jobs, the cluster, snapshots.",
        version="v1",
    )

    @app.get("/ui", include_in_schema=False, response_class=HTMLResponse)
    def page() -> str:
        """The live cluster map; it reads the API below with the user's own token."""
        return ui.PAGE

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(response: Response) -> dict[str, str]:
        if ready():
            return {"status": "ok"}
        response.status_code = 503
        return {"status": "starting"}

    async def caller(request: Request) -> Named:
        header = request.headers.get("authorization", "")
        if reviews is None:
            raise HTTPException(503, "the status API is not configured")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        who: Named | None = await reviews.authenticate(header[7:].strip())
        if who is None:
            raise HTTPException(401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"})
        return who

    Who = Annotated[Named, Depends(caller)]

    async def cluster_wide(who: Named) -> None:
        assert reviews is not None
        if not await reviews.allowed(who, "list", "gpuquotas"):
            raise HTTPException(403, f"{who.name} may not list gpuquotas, which this view needs")

    def current() -> model.CycleRecord:
        state = latest()
        if state is None:
            raise HTTPException(503, "no scheduling cycle has run yet")
        return state

    async def may_list_jobs(who: Named, namespace: str) -> bool:
        assert reviews is not None
        return await reviews.allowed(who, "list", "trainingjobs", namespace=namespace)

    @app.get("/api/v1/queues", response_model=list[views.QueueView], response_model_by_alias=True)
    async def list_queues(who: Who) -> list[views.QueueView]:
        """Every queue (GPUQuota) with guaranteed, limit, fair share, allocated and pending GPUs per type."""
        await cluster_wide(who)
        return views.queues(current())

    @app.get(
        "/api/v1/jobs",
        response_model=list[views.JobView],
        response_model_by_alias=True,
        response_model_exclude_none=True,
    )
    async def list_jobs(
        who: Who, namespace: str | None = None, queue: str | None = None, phase: str | None = None
    ) -> list[views.JobView]:
        """TrainingJobs, and the gangs of pods Leitstand did not create (kind Job, PyTorchJob, Gang or Pod), in
        the namespaces where the caller may list TrainingJobs, filtered by namespace, queue and phase."""
        bodies = trainingjobs()
        groups = views.pod_groups(latest(), pod_estimates())
        namespaces = sorted({b["metadata"]["namespace"] for b in bodies} | {g.namespace for g in groups}
                            | ({namespace} if namespace else set()))  # fmt: skip
        visible = {ns for ns in namespaces if await may_list_jobs(who, ns)}
        if namespace is not None and namespace not in visible:
            raise HTTPException(403, f"{who.name} may not list trainingjobs in namespace {namespace}")
        return views.jobs(
            [b for b in bodies if b["metadata"]["namespace"] in visible], namespace=namespace, queue=queue, phase=phase,
            groups=[g for g in groups if g.namespace in visible],
        )  # fmt: skip

    @app.get("/api/v1/jobs/{namespace}/{name}", response_model=views.JobView, response_model_by_alias=True)
    async def get_job(who: Who, namespace: str, name: str) -> views.JobView:
        """One TrainingJob with why it waits (reason, message with the numbers), its place and placement."""
        if not await may_list_jobs(who, namespace):
            raise HTTPException(403, f"{who.name} may not list trainingjobs in namespace {namespace}")
        for body in trainingjobs():
            if body["metadata"]["namespace"] == namespace and body["metadata"]["name"] == name:
                return views.job(body, detail=True)
        raise HTTPException(404, f"no TrainingJob {namespace}/{name}")

    @app.get("/api/v1/cluster", response_model=views.ClusterView, response_model_by_alias=True)
    async def get_cluster(who: Who) -> views.ClusterView:
        """GPU types with capacity and free GPUs, leaf groups, nodes and whole free nodes."""
        await cluster_wide(who)
        return views.cluster(current())

    @app.get("/api/v1/snapshot")
    async def get_snapshot(who: Who) -> dict[str, Any]:
        """The last cycle's snapshot, for offline replay with ``leitstand replay``."""
        await cluster_wide(who)
        state = current()
        return dumps.dump(state.snapshot, state.policy, now=state.now)

    return app
