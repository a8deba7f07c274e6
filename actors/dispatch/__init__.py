"""Dispatch of committed incidents to sinks (file, webhook, MQTT) with retries, a circuit breaker per
sink and dead letters. ``policy`` is the pure core; ``sinks`` and ``actor`` are the shell."""

from actors.dispatch.policy import BreakerState, CircuitBreaker, RetryPolicy, Transition

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "Transition"]
