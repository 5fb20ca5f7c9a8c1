"""AI inference stand-in: Azure AI model-inference chat completions, over HTTP or respx.

`AIServer` (uvicorn in a thread, for processes) and `AIRouter` (respx, in-process) share
one `AIBehaviour`: api-key check, deterministic answers per model, usage tokens, latency
distribution and a fault profile with an injectable random source.
"""

from standins.ai.answers import AnswerKind, answer, detect_kind
from standins.ai.behaviour import (
    DEFAULT_DEPLOYMENTS,
    AIBehaviour,
    AICall,
    Deployment,
    Reply,
)
from standins.ai.faults import Fault, FaultProfile, Latency
from standins.ai.router import AIRouter
from standins.ai.server import AIServer, create_app

__all__ = [
    "DEFAULT_DEPLOYMENTS",
    "AIBehaviour",
    "AICall",
    "AIRouter",
    "AIServer",
    "AnswerKind",
    "Deployment",
    "Fault",
    "FaultProfile",
    "Latency",
    "Reply",
    "answer",
    "create_app",
    "detect_kind",
]
