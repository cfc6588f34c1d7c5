"""synthocr's recognizers: their registry, training, evaluation and use (README, "What it builds").

In a command's process (``python -m models.<name>``, a ``synthocr-*`` script), Ctrl-C while the
command still imports is answered with one line, not a traceback (`models.cli`)."""

from models.cli import is_command_process, quiet_interrupts_while_starting

if is_command_process():
    quiet_interrupts_while_starting()
