"""hneuron_utils: the tested library behind the H-Neurons workbook notebooks."""

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
__version__ = "0.1.0"
