"""Every API command, one module per area; importing the package registers them all."""

from . import (  # noqa: F401 - each module registers its commands
    accounts,
    affinity,
    compat,
    config,
    discovery,
    guest_data,
    infra,
    jobs,
    metrics,
    networks,
    offerings,
    projects,
    security_groups,
    tags,
    templates,
    tenancy,
    trust,
    vms,
    volumes,
)
