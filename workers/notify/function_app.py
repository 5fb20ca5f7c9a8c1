"""Notification app (host.json profile "notifications"): events-topic subscribers + DLQ triage.

Auto-complete is on: handlers never raise (failures are logged and counted), so a failed
notification never dead-letters its event. The DLQ monitor's `alert.dlq` reaches every
subscription (the events topic has no filters); the webhook and email workers deliver it
to the operators (`OPS_ALERT_WEBHOOK_URL`, `OPS_ALERT_EMAIL`), see `workers.common.alerts`.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import httpx

from workers.common.alerts import OpsEmailAlerter, OpsWebhookAlerter, is_dlq_alert
from workers.common.clock import clock_from_settings
from workers.common.db import make_engine
from workers.common.dlq import DlqMonitor, ServiceBusDlqInspector
from workers.common.messaging import ServiceBusOutbox
from workers.common.notifications import (
    EmailNotifier,
    FailureCounter,
    MetricsRecorder,
    SmtpMailer,
    WebhookNotifier,
    signalr_output,
)
from workers.common.repository import JobRepository
from workers.common.runtime import SchemaGate
from workers.common.settings import Role, load_settings

SETTINGS = load_settings(Role.NOTIFY)
CLOCK = clock_from_settings(SETTINGS)
REPOSITORY = JobRepository(make_engine(SETTINGS.database_url))
SCHEMA = SchemaGate(REPOSITORY.engine)
COUNTER = FailureCounter()
OUTBOX = ServiceBusOutbox.from_connection_string(
    SETTINGS.servicebus_connection, SETTINGS.topic_jobs, SETTINGS.topic_events
)
TEMPLATES = Path(__file__).with_name("templates")
MAILER = (
    SmtpMailer(
        SETTINGS.smtp_host,
        SETTINGS.smtp_port,
        SETTINGS.smtp_username,
        SETTINGS.smtp_password,
        SETTINGS.smtp_starttls,
    )
    if SETTINGS.smtp_host
    else None
)
EMAIL = EmailNotifier(REPOSITORY, MAILER, TEMPLATES, SETTINGS.smtp_from, COUNTER)
HTTP = httpx.AsyncClient()
OPS_EMAIL = OpsEmailAlerter(
    SETTINGS.ops_alert_emails, MAILER, TEMPLATES, SETTINGS.smtp_from, COUNTER
)
OPS_WEBHOOK = OpsWebhookAlerter(
    SETTINGS.ops_alert_webhook_url,
    HTTP,
    COUNTER,
    secret=SETTINGS.webhook_signing_secret,
    timeout_seconds=SETTINGS.webhook_timeout_seconds,
)
WEBHOOK = WebhookNotifier(
    REPOSITORY,
    HTTP,
    COUNTER,
    default_secret=SETTINGS.webhook_signing_secret,
    timeout_seconds=SETTINGS.webhook_timeout_seconds,
    clock=CLOCK,
)
METRICS = MetricsRecorder(REPOSITORY, COUNTER)
DLQ = DlqMonitor(
    ServiceBusDlqInspector.from_connection_string(
        SETTINGS.servicebus_connection,
        admin_connection=SETTINGS.servicebus_admin_connection,
        admin_ca_bundle=SETTINGS.servicebus_admin_ca_bundle,
    ),
    OUTBOX,
    SETTINGS.topic_jobs,
    warning_threshold=SETTINGS.dlq_warning_threshold,
    critical_threshold=SETTINGS.dlq_critical_threshold,
    clock=CLOCK,
)

app = func.FunctionApp()


@app.function_name("NotifySignalRWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_EVENTS%",
    subscription_name="notify-signalr",
    connection="SERVICEBUS_CONNECTION",
)
@app.generic_output_binding(
    arg_name="signalr",
    type="signalR",
    hub_name="huntaze",
    connection_string_setting="AzureSignalRConnectionString",
)
def notify_signalr_worker(message: func.ServiceBusMessage, signalr: func.Out[str]) -> None:
    payload = signalr_output(message.get_body(), message.application_properties, COUNTER)
    if payload is not None:
        signalr.set(payload)


@app.function_name("NotifyEmailWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_EVENTS%",
    subscription_name="notify-email",
    connection="SERVICEBUS_CONNECTION",
)
async def notify_email_worker(message: func.ServiceBusMessage) -> None:
    body, properties = message.get_body(), message.application_properties
    if is_dlq_alert(body, properties):
        await OPS_EMAIL.handle(body, properties)
        return
    await SCHEMA.ensure()
    await EMAIL.handle(body, properties)


@app.function_name("NotifyWebhookWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_EVENTS%",
    subscription_name="notify-webhook",
    connection="SERVICEBUS_CONNECTION",
)
async def notify_webhook_worker(message: func.ServiceBusMessage) -> None:
    body, properties = message.get_body(), message.application_properties
    if is_dlq_alert(body, properties):
        await OPS_WEBHOOK.handle(body, properties)
        return
    await SCHEMA.ensure()
    await WEBHOOK.handle(body, properties)


@app.function_name("MetricsWorker")
@app.service_bus_topic_trigger(
    arg_name="message",
    topic_name="%TOPIC_EVENTS%",
    subscription_name="metrics",
    connection="SERVICEBUS_CONNECTION",
)
async def metrics_worker(message: func.ServiceBusMessage) -> None:
    await SCHEMA.ensure()
    await METRICS.handle(message.get_body(), message.application_properties)


@app.function_name("DlqTriageMonitor")
@app.timer_trigger(arg_name="timer", schedule="0 */15 * * * *", run_on_startup=False)
async def dlq_triage_monitor(timer: func.TimerRequest) -> None:
    await DLQ.run()
