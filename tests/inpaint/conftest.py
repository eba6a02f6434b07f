"""Fixtures of the completion tests."""

import pytest
from skimage import data


@pytest.fixture(scope="module")
def astronaut():
  """An odd-sized real photo: 451 rows is not a multiple of 4."""
  return data.astronaut()[20:471, 100:400].copy()
