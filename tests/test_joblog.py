"""The job scripts' logging: the file gets everything, the console warnings and one line per
failure (synth.joblog), run in a real subprocess as Snakemake runs a script."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from synth import joblog


def test_a_job_logs_to_its_file_warns_on_the_console_and_fails_in_one_line(tmp_path):
    log = tmp_path / "job.log"
    script = textwrap.dedent(
        f"""
        import logging
        from synth import joblog
        joblog.start({str(log)!r})
        logging.getLogger("synth.fonts").info("scanned 3 fonts")
        logging.getLogger("synth.fonts").warning("font fonts/x.woff2 skipped")
        logging.getLogger("fontTools.ttLib").warning("'created' timestamp seems very low")
        logging.getLogger("synth.fonts.files").warning("font pattern nowhere/* matches nothing")
        logging.getLogger("synth.charset").warning("charset chars: 'A' repeated after NFKC")
        raise ValueError("tasks.line.charset: 1 character covered by no training font")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "WARNING synth.fonts: font fonts/x.woff2 skipped",
        "error: ValueError: tasks.line.charset: 1 character covered by no training font",
        f"  (traceback in {log})",
    ]
    text = log.read_text()
    for line in (
        "scanned 3 fonts",
        "x.woff2 skipped",
        "timestamp seems very low",
        "nowhere/*",
        "'A' repeated after NFKC",
    ):
        # fontTools' quirks, the font patterns' and the charset's news stay in the file
        assert line in text
    assert "Traceback (most recent call last)" in text and text.rstrip().endswith(
        "ValueError: tasks.line.charset: 1 character covered by no training font"
    )


def test_a_job_stopped_by_ctrl_c_says_so_in_one_line_and_in_its_log(tmp_path):
    log = tmp_path / "job.log"
    script = textwrap.dedent(
        f"""
        import logging, os, signal, time
        from synth import joblog
        # Python's own Ctrl-C handler, which it leaves out when started with SIGINT ignored
        # (the tests run as a shell's background job)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        joblog.start({str(log)!r})
        logging.getLogger("job").info("step 40")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"interrupted: {log}"]
    text = log.read_text()
    assert "step 40" in text and "KeyboardInterrupt" in text
    assert text.rstrip().endswith(joblog.INTERRUPTED)


def test_the_workflow_process_prints_the_font_patterns_news_once(tmp_path):
    """`joblog.console`, as the Snakefile calls it when it resolves the font patterns: warnings
    on stderr in the jobs' one-line form, once however often it is called; nothing below."""
    script = textwrap.dedent(
        """
        import logging
        from synth import joblog
        joblog.console("synth")
        joblog.console("synth")
        files = logging.getLogger("synth.fonts.files")
        files.info("resolved 3 patterns")
        files.warning("font file fonts/a.ttf is not a font this project reads (0 bytes); left out")
        logging.getLogger("models.train").warning("not synth's")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "WARNING synth.fonts.files: font file fonts/a.ttf is not a font this project reads "
        "(0 bytes); left out",
        "not synth's",  # another logger keeps Python's default (the last-resort handler)
    ]
