"""Write N completed flow runs straight into a stopped Prefect server's database, through
Prefect's own server models: creating them one API call at a time takes far longer than the
read the benchmark measures. Run with the server's PREFECT_HOME in the environment."""

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from prefect.server import models, schemas
from prefect.server.database import provide_database_interface


async def seed(count):
    db = provide_database_interface()
    async with db.session_context(begin_transaction=True) as session:
        flow = await models.flows.create_flow(session=session, flow=schemas.core.Flow(name="bench"))
        now = datetime.now(UTC)
        for i in range(count):
            ended = now - timedelta(seconds=i)
            await models.flow_runs.create_flow_run(
                session=session,
                flow_run=schemas.core.FlowRun(
                    flow_id=flow.id,
                    name=f"bench-{i}",
                    run_count=1,
                    start_time=ended - timedelta(seconds=5),
                    end_time=ended,
                    state=schemas.states.Completed(timestamp=ended),
                ),
            )


if __name__ == "__main__":
    asyncio.run(seed(int(sys.argv[1])))
