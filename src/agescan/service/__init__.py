"""``agescan serve``: an HTTP API and a privacy-first web page over :class:`agescan.AgeEstimator` (FastAPI and
uvicorn, the ``serve`` extra). docs/service.md describes the endpoints, the privacy guarantees and the hardening.

Example:
    >>> from agescan.service import ServiceConfig, serve
    >>> serve(ServiceConfig(port=8000))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

from agescan.service.config import ServiceConfig, read_api_keys


def uvicorn_options(config: ServiceConfig) -> dict:
    """How uvicorn runs the service: no Server header, short keep-alive, no access log unless asked for."""
    return dict(host=config.host, port=config.port, access_log=config.access_log, server_header=False,
                timeout_keep_alive=5, log_level="info" if config.access_log else "warning")


def serve(config: ServiceConfig, on_ready: Callable[[], None] | None = None) -> None:
    """Run the service until interrupted: ``config.workers`` processes, each loading the model once.

    The model and detector are loaded here first (with several workers, once more in this process, to check them),
    so that a bad configuration raises its own error (an unknown model, a bad value) before anything listens;
    ``on_ready`` (the CLI's banner) is called after that, just before the server starts."""
    try:
        import uvicorn
    except ImportError:
        from agescan.errors import ConfigError

        raise ConfigError("agescan serve needs FastAPI and uvicorn: pip install 'agescan[serve]'.") from None
    import os

    from agescan.scan import quiet_decoder_logs
    from agescan.service.app import app_from_env, create_app, load_estimator
    from agescan.service.config import ENV_CONFIG

    options = uvicorn_options(config)
    quiet_decoder_logs()
    estimator = load_estimator(config)
    if on_ready is not None:
        on_ready()
    if config.workers == 1:
        uvicorn.run(create_app(config, estimator), **options)
    else:  # uvicorn starts each worker by importing the factory; the configuration travels in the environment
        del estimator  # each worker loads its own
        os.environ[ENV_CONFIG] = config.to_env()
        uvicorn.run(f"{app_from_env.__module__}:app_from_env", factory=True, workers=config.workers, **options)


__all__ = ["ServiceConfig", "read_api_keys", "serve", "uvicorn_options"]
