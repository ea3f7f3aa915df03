from longops.cli import app

app(prog_name="longops")
