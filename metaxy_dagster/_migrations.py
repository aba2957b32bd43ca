"""Accept as a Dagster op and job: the migration runs where the data lives, with config."""

from typing import Any

import dagster as dg
from pydantic import Field

import metaxy_core as mx
from metaxy_dagster._resources import MetaxyStore

STORE_KEY = "metaxy_store"


class AcceptConfig(dg.Config):
    """What to accept (see `metaxy_core.migrations.accept`)."""

    feature: str = Field(description="The feature key whose stale samples are accepted.")
    reason: str = Field(description="Why the samples are accepted; kept in the audit record.")
    fields: list[str] | None = Field(
        default=None,
        description="Accept only these fields; samples also stale in others are skipped.",
    )
    filters: list[str] = Field(
        default_factory=list,
        description="Conditions in the filter language on the feature's stored columns.",
    )
    dry_run: bool = Field(default=False, description="Count what would be accepted; write nothing.")


@dg.op(
    name="metaxy_accept",
    description="Accept the current definition for stale samples without recomputing them.",
    tags={"kind": "metaxy"},
)
def accept_op(
    context: dg.OpExecutionContext, config: AcceptConfig, metaxy_store: MetaxyStore
) -> dict[str, Any]:
    """Re-stamp the selected stale samples and record who (this run), when and why.

    Args:
        context: the op's execution context (its run id is the audit record's actor).
        config: the feature, reason, fields, filters and dry-run switch.
        metaxy_store: the store resource.

    Returns:
        The report as a dict (accepted, rows, skipped, new, audit_id, ...).

    Example:
        >>> jobs = [accept_job()]  # the job that runs this op, doctest: +SKIP
    """
    report = mx.migrations.accept(
        metaxy_store.open(),
        config.feature,
        reason=config.reason,
        fields=config.fields,
        filters=config.filters,
        dry_run=config.dry_run,
        actor=f"dagster run {context.run_id}",
    )
    context.log.info(report.describe())
    summary = report.to_dict()
    scalars = {k: v for k, v in summary.items() if isinstance(v, str | int | bool)}
    context.add_output_metadata(scalars)
    return summary


def accept_job(*, name: str = "metaxy_accept_job") -> dg.JobDefinition:
    """A job running `accept_op` with config, on the `metaxy_store` resource.

    Args:
        name: the job's name.

    Returns:
        The job; add it to `Definitions` next to the `metaxy_store` resource
        (`build_definitions` provides one) and launch it with run config.

    Example:
        >>> job = accept_job()  # doctest: +SKIP
        >>> job.execute_in_process(run_config={"ops": {"metaxy_accept": {"config": {
        ...     "feature": "crop", "reason": "refactor"}}}}, resources=...)  # doctest: +SKIP
    """

    @dg.job(name=name, description="Accept a new definition for stale samples (metaxy).")
    def _accept() -> None:
        accept_op()

    return _accept
