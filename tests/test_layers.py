"""Layering: data/, metrics/, analysis/, optics/ and report/ work without importing torch."""

import subprocess
import sys


def test_data_metrics_analysis_optics_and_report_do_not_import_torch():
    code = ("import sys\n"
            "import virtualstain, virtualstain.data.io, virtualstain.data.samples, virtualstain.data.splits\n"
            "import virtualstain.data.normalization, virtualstain.data.patches, virtualstain.data.synthetic\n"
            "import virtualstain.metrics, virtualstain.analysis, virtualstain.report.html, virtualstain.report.study\n"
            "import virtualstain.optics, virtualstain.workflows.phase, virtualstain.workflows.phase.drymass\n"
            "import virtualstain.analysis.compartments, virtualstain.workflows.srqpi.simulate\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
