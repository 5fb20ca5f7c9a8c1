"""Chat/content worker app (host.json profile "chat/content").

One trigger per subscription of the jobs topic; each processor accepts only its own job
type, so a mis-routed message is dead-lettered as INVALID_PAYLOAD instead of mis-handled.
A timer per subscription sweeps its dead-letter queue (peek only) and ends the jobs the
broker dead-lettered on its own (TTL, MaxDeliveryCount): see `workers.common.deadletters`.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from workers.common.contracts import JobType
from workers.common.deadletters import SWEEP_SCHEDULE
from workers.common.runtime import HostProfile, JobWorkerRuntime, SharedDeps
from workers.common.settings import Role, load_settings

SETTINGS = load_settings(Role.JOBS)
PROFILE = HostProfile.load(Path(__file__).with_name("host.json"))
DEPS = SharedDeps.from_settings(SETTINGS)
CHAT = JobWorkerRuntime.build(JobType.CHAT_SUGGEST, DEPS, PROFILE)
CONTENT_SUGGEST = JobWorkerRuntime.build(JobType.CONTENT_SUGGEST, DEPS, PROFILE)
CONTENT_ANALYZE = JobWorkerRuntime.build(JobType.CONTENT_ANALYZE, DEPS, PROFILE)

app = func.FunctionApp()


@app.function_name("ChatSuggestionsWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_JOBS%",
    subscription_name="chat-suggestions",
    connection="SERVICEBUS_CONNECTION",
    auto_complete_messages=False,
)
async def chat_suggestions_worker(
    message: servicebus.ServiceBusReceivedMessage,
    message_actions: servicebus.ServiceBusMessageActions,
) -> None:
    await CHAT.handle(message, message_actions)


@app.function_name("ContentSuggestionsWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_JOBS%",
    subscription_name="content-suggestions",
    connection="SERVICEBUS_CONNECTION",
    auto_complete_messages=False,
)
async def content_suggestions_worker(
    message: servicebus.ServiceBusReceivedMessage,
    message_actions: servicebus.ServiceBusMessageActions,
) -> None:
    await CONTENT_SUGGEST.handle(message, message_actions)


@app.function_name("ContentAnalysisWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_JOBS%",
    subscription_name="content-analysis",
    connection="SERVICEBUS_CONNECTION",
    auto_complete_messages=False,
)
async def content_analysis_worker(
    message: servicebus.ServiceBusReceivedMessage,
    message_actions: servicebus.ServiceBusMessageActions,
) -> None:
    await CONTENT_ANALYZE.handle(message, message_actions)


@app.function_name("ChatSuggestionsDeadLetterSweeper")
@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
async def chat_suggestions_dead_letter_sweeper(timer: func.TimerRequest) -> None:
    await CHAT.sweep_dead_letters()


@app.function_name("ContentSuggestionsDeadLetterSweeper")
@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
async def content_suggestions_dead_letter_sweeper(timer: func.TimerRequest) -> None:
    await CONTENT_SUGGEST.sweep_dead_letters()


@app.function_name("ContentAnalysisDeadLetterSweeper")
@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
async def content_analysis_dead_letter_sweeper(timer: func.TimerRequest) -> None:
    await CONTENT_ANALYZE.sweep_dead_letters()
