"""`python -m keras_rise`: the `keras-rise` command (`keras_rise.cli`)."""

import sys

from keras_rise.cli import main

sys.exit(main())
