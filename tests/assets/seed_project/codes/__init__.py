from .dataset import *
from .network import *
from .model import *
from .trainer import *
from .gan import *
