"""Drive sensors like the daemon does: evaluate, apply partition requests, execute each run."""

import dagster as dg


def tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance):
    """Evaluate sensor `name` with a real context and apply its partition requests."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        result = sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def execute(defs: dg.Definitions, request: dg.RunRequest, instance: dg.DagsterInstance):
    """Run one run request of the increment sensor in process."""
    job = defs.resolve_job_def("metaxy_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=list(request.asset_selection or []),
        tags=dict(request.tags),
    )


def requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
