"""The worker-facing addresses of the AI stand-in, shared by its HTTP and respx faces."""

from __future__ import annotations

from standins.ai.behaviour import AIBehaviour, AICall


class AIEndpoints:
    """Needs ``url`` (the base URL) and ``behaviour`` from the class it is mixed into."""

    url: str
    behaviour: AIBehaviour

    @property
    def shared_endpoint(self) -> str:
        """Azure AI Foundry style: one endpoint for all models, `model` chosen in the body."""
        return f"{self.url}/models"

    def endpoint(self, model: str) -> str:
        """The endpoint of one deployment; the worker appends `/chat/completions`."""
        if model not in self.behaviour.deployments:
            raise KeyError(f"no deployment {model!r}; have {sorted(self.behaviour.deployments)}")
        return f"{self.url}/{model}"

    def media_url(self, name: str = "clip.mp4") -> str:
        """A media URL that exists (HEAD 200); names starting with `missing` answer 404."""
        return f"{self.url}/media/{name}"

    def environment(self, *, shared: bool = False) -> dict[str, str]:
        """Worker settings (endpoint per deployment setting, and the api key if any)."""
        env = {
            d.setting: self.shared_endpoint if shared else self.endpoint(d.name)
            for d in self.behaviour.deployments.values()
            if d.setting
        }
        if self.behaviour.api_key is not None:
            env["AZURE_AI_API_KEY"] = self.behaviour.api_key
        return env

    @property
    def calls(self) -> list[AICall]:
        return self.behaviour.calls.snapshot()
