import pytest

pytestmark = pytest.mark.system
