"""Layering: data/ and metrics/ (and the receptive-field maths) work without importing torch."""

import subprocess
import sys


def test_data_and_metrics_do_not_import_torch():
    code = ("import sys\n"
            "import virtualstain, virtualstain.data.io, virtualstain.data.samples, virtualstain.data.splits\n"
            "import virtualstain.data.normalization, virtualstain.data.patches, virtualstain.data.synthetic\n"
            "import virtualstain.metrics\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
