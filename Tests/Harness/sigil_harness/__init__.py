"""The test harness of Sigil: what the integration tests (Tests/Integration), the crash test, the soak and the
benchmark share to run the real binary and check what it did. Import from the package:

    from sigil_harness import Sigil, SigilServer, python_csr, dev_token, LEDGER, Envoy, envoy_binary, bootstrap

Names are looked up in the modules below on first use (PEP 562), so that a standard-library-only script (the
benchmark's sampler, in the plotting venv) can import `sigil_harness.procfs` without loading cryptography,
PyJWT and requests."""
import importlib

_MODULES = ("ledger", "process", "procfs", "pki", "tokens", "server", "fakes", "postgres", "audit", "envoy")


def __getattr__(name: str):
    if not name.startswith("_"):
        for module_name in _MODULES:
            module = importlib.import_module(f".{module_name}", __name__)
            if name in vars(module):
                value = globals()[name] = vars(module)[name]
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
