"""In the tests' PostgreSQL run (`pytest --engine postgresql`), every Python process the tests
start (servers, the command line) puts each data folder's state in a PostgreSQL database of its
own, as SQLite puts it in files of that folder: tests stay apart, and a test may still reach a
server's state through its data folder (`Registry(server.data)`)."""

import os

if os.environ.get("WAYSTATION_TEST_POSTGRES"):
    from folder_databases import install

    install(os.environ["WAYSTATION_TEST_POSTGRES"])
