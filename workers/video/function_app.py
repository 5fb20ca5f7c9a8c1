"""Video worker app (host.json profile "video"): `video.analysis` jobs.

Thin adapter: the trigger hands the SDK-type message and its settlement actions to the
shared processor, which settles explicitly (`autoCompleteMessages: false`). A timer
sweeps the subscription's dead-letter queue (peek only) and ends the jobs the broker
dead-lettered on its own (TTL, MaxDeliveryCount): see `workers.common.deadletters`.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from workers.common.contracts import JobType
from workers.common.deadletters import SWEEP_SCHEDULE
from workers.common.runtime import HostProfile, JobWorkerRuntime, SharedDeps
from workers.common.settings import Role, load_settings

SETTINGS = load_settings(Role.VIDEO)
PROFILE = HostProfile.load(Path(__file__).with_name("host.json"))
DEPS = SharedDeps.from_settings(SETTINGS)
VIDEO = JobWorkerRuntime.build(JobType.VIDEO_ANALYSIS, DEPS, PROFILE)

app = func.FunctionApp()


@app.function_name("VideoAnalysisWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_JOBS%",
    subscription_name="video-analysis",
    connection="SERVICEBUS_CONNECTION",
    auto_complete_messages=False,
)
async def video_analysis_worker(
    message: servicebus.ServiceBusReceivedMessage,
    message_actions: servicebus.ServiceBusMessageActions,
) -> None:
    await VIDEO.handle(message, message_actions)


@app.function_name("VideoAnalysisDeadLetterSweeper")
@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
async def video_analysis_dead_letter_sweeper(timer: func.TimerRequest) -> None:
    await VIDEO.sweep_dead_letters()
