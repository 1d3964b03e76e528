import sys

from deployer.server.entrypoint import main

sys.exit(main())
