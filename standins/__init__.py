"""Stand-ins for the services the worker apps call: AI inference, SignalR, SMTP, webhooks.

They are not emulators of Azure services in the Service Bus emulator's sense; each answers
just enough of its protocol for the workers' code paths, records what it was sent, and can be
told to fail or hang so a test can prove the workers cope.
"""
