"""The operator's configuration: one YAML file plus ``LEITSTAND_*`` environment overrides.

Validated once at start; a bad value is a UserError naming the field and the
fix, before the operator touches the cluster. The same file is the ConfigMap
the Helm chart renders.

```yaml
topology:                 # coarsest first; label keys on the nodes
  - {name: spine, label: network.topology.nvidia.com/spine}
  - {name: leaf, label: network.topology.nvidia.com/leaf}
  - {name: node, label: kubernetes.io/hostname}
gpuTypes:                 # nvidia.com/gpu.product label -> short name used in GPUQuotas and jobs
  NVIDIA-B200: b200
cycleIntervalSeconds: 5   # scheduling cycle when nothing changes
bindConcurrency: 64       # binds in flight at once
leaderElection: {enabled: true, namespace: leitstand-system, leaseName: leitstand, leaseDurationSeconds: 10}
```

Environment overrides: ``LEITSTAND_CYCLE_INTERVAL_SECONDS``, ``LEITSTAND_BIND_CONCURRENCY``,
``LEITSTAND_STARVATION_SECONDS``, ``LEITSTAND_ESTIMATE_INTERVAL_SECONDS``,
``LEITSTAND_LEADER_ELECTION`` (true/false), ``LEITSTAND_LEASE_NAMESPACE``, ``LEITSTAND_LEASE_NAME``.
"""

import os
import re
from pathlib import Path

import pydantic
from pydantic.alias_generators import to_camel

from leitstand.core import model
from leitstand.errors import UserError, read_yaml
from leitstand.kube import bodies

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Level(_Model):
    name: str = pydantic.Field(pattern=_NAME, max_length=63)
    label: str = pydantic.Field(min_length=1, max_length=316)


class LeaderElection(_Model):
    enabled: bool = True
    namespace: str = pydantic.Field(default="leitstand-system", pattern=_NAME)
    lease_name: str = pydantic.Field(default="leitstand", pattern=_NAME)
    lease_duration_seconds: float = pydantic.Field(default=10.0, gt=1, le=120)
    renew_interval_seconds: float = pydantic.Field(default=2.0, gt=0, le=60)

    @pydantic.model_validator(mode="after")
    def _renew_well_within_the_lease(self) -> "LeaderElection":
        if self.renew_interval_seconds * 2 > self.lease_duration_seconds:
            raise ValueError("renewIntervalSeconds must be at most half of leaseDurationSeconds")
        return self


MAX_RESERVATIONS = 64  # waiting gangs holding reservations at once, at most


class Configuration(_Model):
    topology: tuple[Level, ...] = tuple(Level(name=name, label=label) for name, label in bodies.Settings().topology)
    gpu_types: dict[str, str] = pydantic.Field(default_factory=lambda: dict(bodies.GPU_TYPES))
    cycle_interval_seconds: float = pydantic.Field(default=5.0, gt=0, le=3600)
    debounce_seconds: float = pydantic.Field(default=0.2, ge=0, le=10)
    bind_concurrency: int = pydantic.Field(default=64, ge=1, le=1024)
    eviction_grace_seconds: int = pydantic.Field(default=30, ge=0, le=3600)
    starvation_seconds: float = pydantic.Field(default=model.Policy().starvation_seconds, ge=0)
    backfill: bool = model.Policy().backfill
    reservations: int = pydantic.Field(default=model.Policy().reservations, ge=0, le=MAX_RESERVATIONS)
    moves_per_cycle: int = pydantic.Field(default=model.Policy().moves_per_cycle, ge=0, le=64)
    move_budget_gpu_hours: float = pydantic.Field(default=model.Policy().move_budget / 3600, ge=0, le=100_000)
    move_checkpoint_age_seconds: float = pydantic.Field(default=model.Policy().move_checkpoint_age, ge=0, le=86_400)
    move_settle_seconds: float = pydantic.Field(default=model.Policy().move_settle_seconds, ge=0, le=7 * 86_400)
    estimate_interval_seconds: float = pydantic.Field(default=30.0, ge=0, le=3600)
    usage_half_life_seconds: float = pydantic.Field(default=7 * 24 * 3600.0, ge=0, le=366 * 24 * 3600.0)
    usage_write_interval_seconds: float = pydantic.Field(default=60.0, ge=1, le=3600)
    leader_election: LeaderElection = LeaderElection()

    @pydantic.model_validator(mode="after")
    def _levels_are_unique(self) -> "Configuration":
        names = [level.name for level in self.topology]
        if len(set(names)) != len(names) or not names:
            raise ValueError("topology needs at least one level and unique level names")
        for product, short in self.gpu_types.items():
            if not re.fullmatch(_NAME, short):
                raise ValueError(f"gpuTypes: {product} maps to {short!r}, not a short lower-case name such as b200")
        return self

    def settings(self) -> bodies.Settings:
        """What the snapshot builder needs to read nodes."""
        return bodies.Settings(
            topology=tuple((level.name, level.label) for level in self.topology),
            gpu_types=dict(self.gpu_types),
        )


_ENVIRONMENT = {
    "LEITSTAND_CYCLE_INTERVAL_SECONDS": ("cycleIntervalSeconds",),
    "LEITSTAND_BIND_CONCURRENCY": ("bindConcurrency",),
    "LEITSTAND_STARVATION_SECONDS": ("starvationSeconds",),
    "LEITSTAND_ESTIMATE_INTERVAL_SECONDS": ("estimateIntervalSeconds",),
    "LEITSTAND_USAGE_HALF_LIFE_SECONDS": ("usageHalfLifeSeconds",),
    "LEITSTAND_USAGE_WRITE_INTERVAL_SECONDS": ("usageWriteIntervalSeconds",),
    "LEITSTAND_LEADER_ELECTION": ("leaderElection", "enabled"),
    "LEITSTAND_LEASE_NAMESPACE": ("leaderElection", "namespace"),
    "LEITSTAND_LEASE_NAME": ("leaderElection", "leaseName"),
}


def load(path: Path | None, environ: dict[str, str] | None = None) -> Configuration:
    """The configuration from ``path`` (defaults when None) with environment overrides applied."""
    raw: dict[str, object] = {}
    if path is not None:
        loaded = read_yaml(path, "configuration")
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"configuration {path} must be a mapping of settings")
        raw = loaded or {}
    for variable, keys in _ENVIRONMENT.items():
        value = (environ if environ is not None else os.environ).get(variable)
        if value is None:
            continue
        target = raw
        for key in keys[:-1]:
            nested = target.setdefault(key, {})
            if not isinstance(nested, dict):
                raise UserError(f"configuration: {key} must be a mapping")
            target = nested
        target[keys[-1]] = value
    try:
        return Configuration.model_validate(raw)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        source = str(path) if path is not None else "environment"
        raise UserError(f"configuration {source}: {where}: {first['msg']}") from None
