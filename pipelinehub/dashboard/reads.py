"""Reading environments' Redis state for a page, so that one broken Redis cannot break the page.

Pages read through the asyncio form of the state, all environments at once and each within
BUDGET_SECONDS: redis-py retries a refused connection for seconds, and a host that drops packets
for longer, so read one after another, a few unreachable targets would add up to minutes. An
environment whose read fails or runs out of time is `Unavailable`; the others are shown.
"""

import asyncio
import logging
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from redis.exceptions import RedisError

from pipelinehub.state.store import AsyncEnvironmentState

log = logging.getLogger(__name__)
BUDGET_SECONDS = 3.0
CONCURRENCY = 32  # connections opened at once by one page


@dataclass(frozen=True)
class Unavailable:
    """Why an environment's state could not be read."""

    reason: str

    def __str__(self):
        return self.reason


def read_each(environments, reader):
    """[reader(state) or Unavailable] for each environment (loaded `with_connections()`), in
    order. `reader` is an async function of an `AsyncEnvironmentState`."""
    states = [(env, AsyncEnvironmentState.for_environment(env)) for env in environments]

    async def read_all():
        gate = asyncio.Semaphore(CONCURRENCY)
        return await asyncio.gather(*(_read(env, state, reader, gate) for env, state in states))

    return async_to_sync(read_all)() if states else []


def read_one(environment, reader):
    """reader(state) for one environment, or Unavailable."""
    return read_each([environment], reader)[0]


async def _read(environment, state, reader, gate):
    """The details (host, port, user) go to the log, not to the page."""
    async with gate:
        try:
            return await asyncio.wait_for(reader(state), BUDGET_SECONDS)
        except TimeoutError:
            log.warning("page read environment=%s: no answer in %.0fs", environment, BUDGET_SECONDS)
            return Unavailable(f"Redis did not answer within {BUDGET_SECONDS:.0f} seconds")
        except (RedisError, OSError) as exc:
            log.warning("page read environment=%s: %s: %s", environment, type(exc).__name__, exc)
            return Unavailable(f"Redis could not be read ({type(exc).__name__})")
        finally:
            await state.aclose()
