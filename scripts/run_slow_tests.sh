#!/usr/bin/env bash
# The tests marked slow (`@pytest.mark.slow`): left out of the CI suite,
# which must finish in 15 minutes on 2 cores. They run the benchmark scripts
# end to end on a tiny config, and training killed 20 times
# (tests/test_fault_injection.py); run them after changing a script or the
# training loop:
#   bash scripts/run_slow_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q -m slow "$@"
