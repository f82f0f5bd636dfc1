"""Compilation is cached: in a process (trace counts) and across processes (on disk)."""

import os
import subprocess
import sys

import pytest

_PROBE = """
import jax, jax.numpy as jnp, nimare_jax
print(jax.config.jax_compilation_cache_dir)
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.arange(3.0)).block_until_ready()
"""


def _run(env_update):
    env = {**os.environ, **env_update}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_persistent_cache_written_to_configured_folder(tmp_path):
    folder = tmp_path / "cache"
    assert _run({"NIMARE_JAX_CACHE_DIR": str(folder)}) == str(folder)
    assert any(folder.iterdir()), "a compiled program should have been written to the cache"


def test_persistent_cache_defaults_to_user_cache_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NIMARE_JAX_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "nimare_jax" / "jax")


@pytest.mark.parametrize("value", ["off", "0", ""])
def test_persistent_cache_can_be_turned_off(tmp_path, value):
    assert _run({"NIMARE_JAX_CACHE_DIR": value, "XDG_CACHE_HOME": str(tmp_path)}) == "None"
    assert not (tmp_path / "nimare_jax").exists()
