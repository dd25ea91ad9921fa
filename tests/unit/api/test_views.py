"""The status API's list of jobs: TrainingJobs beside the gangs of pods Leitstand did not create."""

from leitstand.api import views
from leitstand.core import model
from leitstand.core.scheduling import schedule
from leitstand.kube import bodies
from tests.unit.kube.test_bodies import SETTINGS, a_node, a_pod, an_owner, owned


def test_pod_groups_are_listed_with_their_kind_phase_and_why_they_wait() -> None:
    owners = dict([an_owner("Job", "sweep", parallelism=2)])
    pods = [owned(f"sweep-{i}", "Job", "sweep") for i in range(2)]
    pods.append(a_pod("notebook", node="n1"))
    quota = {"metadata": {"name": "acme"}, "spec": {"namespaces": ["acme"], "gpus": {"b200": {"guaranteed": 8}}}}
    built = bodies.build([a_node("n1")], [quota], pods, SETTINGS, [], owners)
    decisions = schedule(built.snapshot, model.Policy(topology_levels=SETTINGS.levels), now=1e9)
    latest = model.CycleRecord(built.snapshot, decisions, model.Policy(), 1e9)
    etas = {model.JobKey("acme/jobs/sweep"): "2001-09-09T02:00:00Z", model.JobKey("acme/pods/notebook"): "x"}
    listed = {(v.kind, v.name): v for v in views.jobs([], namespace=None, queue=None, phase=None,
                                                      groups=views.pod_groups(latest, etas))}  # fmt: skip
    assert set(listed) == {("Job", "sweep"), ("Pod", "notebook")}
    sweep = listed[("Job", "sweep")]
    assert (sweep.phase, sweep.gpus, sweep.queue) == ("Queued", 16, "acme")
    assert sweep.reason is not None
    assert sweep.message
    assert sweep.estimated_start_time == "2001-09-09T02:00:00Z"  # the expected start its pods are annotated with
    assert listed[("Pod", "notebook")].phase == "Running"
    assert listed[("Pod", "notebook")].estimated_start_time is None  # running: no estimate shown
    assert views.pod_groups(None) == []
