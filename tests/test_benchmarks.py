"""The benchmarks still run against the library as it is: the quickest configuration of the
scripts that call its internals, each in a subprocess (a change of an internal's return
value once broke ``bench_spectra.py`` with no test to say so)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ._oracles import requires_torch

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_spectral_norms_of_a_network():
    out = run("bench_spectra.py", "--networks-only", "--network", "resnet18", "--size", "32",
              "--relative-width", "1e-4")
    assert "relative_width=0.0001" in out and "total (wall)" in out, out


@requires_torch
def test_lipschitz_report_of_a_network():
    out = run("bench_networks.py", "--skip-operators", "--size", "16", "--workers", "1",
              "--relative-width", "1e-3")
    assert "relative_width=0.001" in out and "widest interval" in out, out


def test_lehmann_spectra_of_a_layer():
    """It reads the exact sections' kernels (a private function): the quickest layer."""
    out = run("bench_lehmann.py", "--layer", "13", "--size", "16", "--top", "4")
    assert "k with a Lehmann bound from the sections:" in out, out


def test_deflation_counts_and_residuals():
    """It reads the embedding grid (a private function): a small layer of each kind."""
    out = run("bench_deflation.py", "--layers", "13", "--size", "64", "--channels", "8",
              "--top", "8")
    assert "majorant eigenvalues over" in out and "residuals over all 8" in out, out


@requires_torch
def test_torch_spectra_against_the_numpy_route():
    out = run("bench_torch_spectra.py", "--channels", "4", "--size", "8", "--repeat", "1")
    assert "(equal: True)" in out and "circular_spectral_norm, float32" in out, out
