#!/usr/bin/env python3
"""check-docs.py - compile (and run) every C block of README.md and docs/*.md.

The test msgpipe_docs_examples runs this against the library just built, so
that a page cannot drift from the API.  Every ```c block must be preceded,
on the line(s) just before its fence, by an HTML comment that says what it
is (invisible when the Markdown is rendered); an unmarked ```c block fails
the check, and so does a marker that is not followed by a ```c block.

    <!-- msgpipe-doc: program -->
        A complete program: compiled, linked with the library and run; it
        must exit 0.  Attributes (KEY=VALUE, quoted with "..." if needed):
          args="a b"       its command-line arguments
          expect="text"    its standard output must contain text
          name=ID          not run alone: it is the server that other
                           programs name with server=ID
          server=ID        run program (or python block) ID first, in the
                           background, then this one as its client
          server-args="s"  run this same program first with these
                           arguments, as its own server
          stop=none        (on a server) wait for it to end by itself;
                           by default it is sent SIGINT once the client
                           has finished
          exit=N           (on a server) the exit status it must end with
          backend=NAME     run only with that backend (msgpipe_backend());
                           with another one it is only compiled
    <!-- msgpipe-doc: fragment -->
        Statements: compiled (not linked) inside a function body, after
        <msgpipe.h>, <stdio.h>, <stdlib.h> and <string.h>, with variables
        `msgpipe *p`, `msgpipe_server *srv` and `int rc` in scope (a
        fragment may declare its own, which then hide these).  Any lines
        after the first line of the comment go at file scope before the
        function: declarations of what the fragment takes as given.
        Unused variables are not warnings here.
    <!-- msgpipe-doc: synopsis -->
        A copy of the header's declarations, as the reference shows them:
        every msgpipe_ / MSGPIPE_ name and every declared name in it must
        exist in api/msgpipe.h, every #define with a value must have the
        header's value, and every function prototype in it is compiled
        against the header (a changed signature is a conflicting type).
    <!-- msgpipe-doc: skip reason="why" -->
        Not checked, with the reason (e.g. it needs libuv).

  os=windows (fragment, synopsis) compiles with the mingw-w64 compiler
  given by --win-cc, after <windows.h>; without one it is reported as not
  compiled.  os=posix marks POSIX-only code (compiled natively).
  A ```python block marked `<!-- msgpipe-doc: python name=ID file=F.py -->`
  is written to F.py (beside the other marked python blocks of its page)
  and can be a program's server (server=ID), run with --python.

Everything is compiled with -std=c99 -Wall -Wextra -Wpedantic -Werror (and
--cflags, e.g. the build's sanitizers); each program runs in a private
directory that is also its XDG_RUNTIME_DIR, so plain pipe names do not meet
those of other runs.  Errors point at the Markdown file and line (#line).
"""
import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

WARN = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
FRAGMENT_WARN = ["-Wno-unused-variable", "-Wno-unused-but-set-variable",
                 "-Wno-unused-function", "-Wno-unused-label"]
RUN_TIMEOUT = 30  # seconds, for any one program
STOP_TIMEOUT = 10  # for a server to end after the client

KINDS = {
    "program": {"args", "expect", "name", "server", "server-args", "stop",
                "exit", "backend", "os"},
    "fragment": {"os"},
    "synopsis": {"os"},
    "skip": {"reason"},
    "python": {"name", "file"},
}

FENCE = re.compile(r"^( *)(`{3,}|~{3,})\s*([^`\s]*)")
MARKER = "<!-- msgpipe-doc:"


class Block:
    def __init__(self, path, line, lang, code, marker, mline):
        self.path, self.line, self.lang, self.code = path, line, lang, code
        self.kind, self.attrs, self.prelude = None, {}, ""
        self.mline = mline
        self.where = "%s:%d" % (path, line)
        if marker is not None:
            self._parse(marker)

    def _parse(self, text):
        body = text.strip()[len(MARKER):]
        if body.endswith("-->"):
            body = body[:-3]
        first, _, rest = body.partition("\n")
        words = shlex.split(first)
        if not words:
            raise ValueError("marker without a kind")
        self.kind = words[0]
        if self.kind not in KINDS:
            raise ValueError("unknown kind %r (one of %s)"
                             % (self.kind, ", ".join(sorted(KINDS))))
        for w in words[1:]:
            key, eq, val = w.partition("=")
            if not eq or key not in KINDS[self.kind]:
                raise ValueError("%s: unknown attribute %r" % (self.kind, w))
            self.attrs[key] = val
        self.prelude = rest
        if self.kind == "skip" and not self.attrs.get("reason"):
            raise ValueError("skip needs reason=\"...\"")
        if self.kind == "python" and not self.attrs.get("file"):
            raise ValueError("python needs file=NAME.py")


def parse(path, rel, errors):
    """Every fenced block of a page that is C or marked, with its marker."""
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks, used, i = [], set(), 0
    stray = []
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].lstrip().startswith(MARKER):
                stray.append(i)
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines):
            s = lines[j].lstrip(" ")
            if s.startswith(fence[0] * len(fence)) and not s.strip(fence[0]):
                break
            j += 1
        code = []
        for ln in lines[i + 1:j]:
            k = 0
            while k < indent and k < len(ln) and ln[k] == " ":
                k += 1
            code.append(ln[k:])
        # The marker: an HTML comment ending on the line before the fence.
        marker, mline = None, None
        if i > 0 and lines[i - 1].rstrip().endswith("-->"):
            k = i - 1
            while k >= 0 and "<!--" not in lines[k]:
                k -= 1
            if k >= 0 and lines[k].lstrip().startswith(MARKER):
                marker = "\n".join(ln.strip() for ln in lines[k:i])
                mline = k + 1
                used.add(k)
        if lang == "c" or marker is not None:
            try:
                b = Block(rel, i + 1, lang, "\n".join(code) + "\n", marker,
                          mline)
            except ValueError as e:
                errors.append("%s:%d: bad marker: %s" % (rel, i, e))
            else:
                if marker is None:
                    errors.append(
                        "%s:%d: unmarked ```c block: put <!-- msgpipe-doc: "
                        "program|fragment|synopsis|skip reason=\"...\" --> "
                        "on the line before it" % (rel, i + 1))
                elif (b.kind == "python") != (lang == "python"):
                    errors.append("%s:%d: marker %r on a ```%s block"
                                  % (rel, i + 1, b.kind, lang))
                else:
                    blocks.append(b)
        i = j + 1
    for k in stray:
        if k not in used:
            errors.append("%s:%d: msgpipe-doc marker not directly before a "
                          "code block" % (rel, k + 1))
    return blocks


def strip_comments(code):
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    return re.sub(r"//[^\n]*", " ", code)


class Checker:
    def __init__(self, args):
        self.a = args
        self.cflags = shlex.split(args.cflags or "")
        self.header = open(os.path.join(args.root, "api", "msgpipe.h"),
                           encoding="utf-8").read()
        self.header_words = set(re.findall(r"\w+", strip_comments(
            self.header)))
        self.header_defines = {}
        for m in re.finditer(r"^#define (\w+)(\([^)]*\))?[ \t]*([^\n\\]*)$",
                             self.header, re.M):
            self.header_defines[m.group(1)] = " ".join(
                strip_comments(m.group(3)).split())
        self.incdir = os.path.join(args.root, "api")
        self.failures = []
        self.notes = 0
        self.pyblocks = []

    # ---- reporting -------------------------------------------------------
    def ok(self, b, what):
        print("ok    %s %s" % (b.where, what))

    def note(self, b, what):
        self.notes += 1
        print("note  %s %s" % (b.where, what))

    def fail(self, b, what, detail=""):
        self.failures.append(b.where)
        print("FAIL  %s %s" % (b.where, what))
        if detail:
            for ln in detail.rstrip().split("\n")[-40:]:
                print("      " + ln)

    # ---- compiling -------------------------------------------------------
    def cc(self, b, src, out, link, extra=(), windows=False):
        cc = self.a.win_cc if windows else self.a.cc
        path = out + ".c"
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        cmd = [cc] + WARN + list(extra) + ["-I", self.incdir]
        if not windows:
            cmd += self.cflags
        if link:
            libdir = os.path.dirname(os.path.abspath(self.a.lib))
            cmd += [path, "-o", out, self.a.lib, "-Wl,-rpath," + libdir]
        else:
            cmd += ["-c", path, "-o", out + ".o"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if r.returncode != 0:
            self.fail(b, "does not compile", " ".join(cmd) + "\n" + r.stdout)
            return False
        return True

    def line(self, b, n):
        return '#line %d "%s"\n' % (n, b.path)

    def windows(self, b):
        if b.attrs.get("os") != "windows":
            return False, True
        if not self.a.win_cc:
            self.note(b, "%s for Windows: not compiled (no mingw-w64 "
                      "compiler found)" % b.kind)
            return True, False
        return True, True

    def fragment(self, b, out):
        win, go = self.windows(b)
        if not go:
            return
        src = ("#include <windows.h>\n" if win else "")
        src += "#include <msgpipe.h>\n#include <stdio.h>\n"
        src += "#include <stdlib.h>\n#include <string.h>\n"
        if b.prelude.strip():
            src += self.line(b, b.mline + 1) + b.prelude + "\n"
        src += ("int msgpipe_doc_fragment(msgpipe *p, msgpipe_server *srv);\n"
                "int msgpipe_doc_fragment(msgpipe *p, msgpipe_server *srv)\n"
                "{\n    int rc = 0;\n    (void)p;\n    (void)srv;\n    {\n")
        src += self.line(b, b.line + 1) + b.code + "    }\n    return rc;\n}\n"
        if self.cc(b, src, out, False, FRAGMENT_WARN, win):
            self.ok(b, "fragment compiles" + (" (mingw-w64)" if win else ""))

    def synopsis(self, b, out):
        code = strip_comments(b.code)
        bad = []
        for w in sorted(set(re.findall(r"\b(?:msgpipe|MSGPIPE)_\w+", code))):
            if w not in self.header_words:
                bad.append("%s is not in msgpipe.h" % w)
        for w in sorted(set(re.findall(r"\b([A-Za-z_]\w*)\s*[;,\[]", code))):
            if w not in self.header_words:
                bad.append("declared name %s is not in msgpipe.h" % w)
        for m in re.finditer(r"^\s*#define (\w+)(\([^)]*\))?[ \t]*(.*)$",
                             code, re.M):
            val = " ".join(m.group(3).split())
            if val in ("", "..."):
                continue
            if self.header_defines.get(m.group(1)) != val:
                bad.append("#define %s %s: msgpipe.h has %r" % (
                    m.group(1), val, self.header_defines.get(m.group(1))))
        if bad:
            self.fail(b, "synopsis differs from msgpipe.h", "\n".join(bad))
            return
        # The function prototypes, compiled against the header.
        protos = re.findall(
            r"^[ \t]*((?:const\s+)?[A-Za-z_][\w \t]*[\s*]+msgpipe_\w+\s*"
            r"\([^;{}]*\)\s*;)", code, re.M)
        win, go = self.windows(b)
        if not go or not protos:
            self.ok(b, "synopsis: names and values as in msgpipe.h")
            return
        src = ("#include <windows.h>\n" if win else "")
        src += "#include <msgpipe.h>\n" + self.line(b, b.line + 1)
        src += "\n".join(protos) + "\n"
        if self.cc(b, src, out, False, (), win):
            self.ok(b, "synopsis: names, values and %d prototype(s) as in "
                    "msgpipe.h" % len(protos))

    # ---- programs --------------------------------------------------------
    def start(self, cmd, cwd):
        env = dict(os.environ, XDG_RUNTIME_DIR=cwd)
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                universal_newlines=True)

    def finish(self, proc, timeout):
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out, False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            return proc.returncode, out, True

    def run_program(self, b, exe, programs, pythons):
        a = b.attrs
        if a.get("backend") and a["backend"] != self.a.backend:
            self.note(b, "program compiles; runs only with backend %s "
                      "(this is %s)" % (a["backend"], self.a.backend))
            return
        cwd = tempfile.mkdtemp(prefix="run-", dir=self.a.work)
        server, sblock, scmd = None, None, None
        if "server-args" in a:
            sblock, scmd = b, [exe] + shlex.split(a["server-args"])
        elif "server" in a:
            sid = a["server"]
            if sid in programs:
                sblock, sexe = programs[sid]
                if sexe is None:
                    self.fail(b, "its server %s did not compile" % sid)
                    return
                scmd = [sexe]
            elif sid in pythons:
                sblock = pythons[sid]
                if not self.a.python:
                    self.note(b, "program compiles; not run (no python)")
                    return
                for pb in self.pyblocks:
                    if pb.path == sblock.path:
                        with open(os.path.join(cwd, pb.attrs["file"]), "w",
                                  encoding="utf-8") as f:
                            f.write(pb.code)
                scmd = [self.a.python, sblock.attrs["file"]]
            else:
                self.fail(b, "server=%s: no program or python block has "
                          "name=%s" % (sid, sid))
                return
            scmd += shlex.split(sblock.attrs.get("args", ""))
        if scmd is not None:
            server = self.start(scmd, cwd)
        client = self.start([exe] + shlex.split(a.get("args", "")), cwd)
        rc, out, timed_out = self.finish(client, RUN_TIMEOUT)
        problems = []
        if timed_out:
            problems.append("did not end within %d s" % RUN_TIMEOUT)
        elif rc != 0:
            problems.append("exit status %d" % rc)
        if "expect" in a and a["expect"] not in out:
            problems.append("output does not contain %r" % a["expect"])
        sout = ""
        if server is not None:
            sa = sblock.attrs if sblock is not b else {}
            if sa.get("stop") != "none" and server.poll() is None:
                server.send_signal(signal.SIGINT)
            src, sout, stimed = self.finish(server, STOP_TIMEOUT)
            if stimed:
                problems.append("the server did not end within %d s"
                                % STOP_TIMEOUT)
            elif "exit" in sa and src != int(sa["exit"]):
                problems.append("the server's exit status is %d, not %s"
                                % (src, sa["exit"]))
            if sblock is not b and "expect" in sa and sa["expect"] not in sout:
                problems.append("the server's output does not contain %r"
                                % sa["expect"])
        shutil.rmtree(cwd, ignore_errors=True)
        if problems:
            detail = "output:\n" + out
            if server is not None:
                detail += "server (%s) output:\n%s" % (" ".join(scmd), sout)
            self.fail(b, "program: " + "; ".join(problems), detail)
        else:
            self.ok(b, "program runs%s%s" % (
                " with its server" if server is not None else "",
                (", prints %r" % a["expect"]) if "expect" in a else ""))

    # ---- all -------------------------------------------------------------
    def check(self, blocks):
        programs, pythons, clients = {}, {}, []
        for n, b in enumerate(blocks):
            out = os.path.join(self.a.work, "b%03d" % n)
            if b.kind == "skip":
                self.ok(b, "skipped: " + b.attrs["reason"])
            elif b.kind == "python":
                self.pyblocks.append(b)
                if "name" in b.attrs:
                    pythons[b.attrs["name"]] = b
            elif b.kind == "fragment":
                self.fragment(b, out)
            elif b.kind == "synopsis":
                self.synopsis(b, out)
            elif b.kind == "program":
                if b.attrs.get("os") == "windows":
                    self.note(b, "Windows program: not run here")
                    continue
                src = self.line(b, b.line + 1) + b.code
                exe = out if self.cc(b, src, out, True) else None
                if "name" in b.attrs:
                    programs[b.attrs["name"]] = (b, exe)
                    if exe:
                        self.ok(b, "program compiles (server %s)"
                                % b.attrs["name"])
                elif exe:
                    clients.append((b, exe))
        named = set()
        for b, exe in clients:
            named.add(b.attrs.get("server"))
            self.run_program(b, exe, programs, pythons)
        for sid, (b, _) in programs.items():
            if sid not in named:
                self.fail(b, "program name=%s is the server of no block" % sid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the source tree")
    ap.add_argument("--cc", required=True, help="the C compiler")
    ap.add_argument("--lib", required=True, help="the shared library")
    ap.add_argument("--work", required=True, help="a scratch directory")
    ap.add_argument("--cflags", default="", help="more compiler flags")
    ap.add_argument("--backend", default="", help="msgpipe_backend()")
    ap.add_argument("--win-cc", default="", help="mingw-w64 gcc, if any")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("pages", nargs="*",
                    help="pages to check (default README.md, docs/*.md)")
    a = ap.parse_args()
    a.root = os.path.abspath(a.root)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    a.work = os.path.abspath(a.work)
    pages = a.pages or ([os.path.join(a.root, "README.md")] +
                        sorted(glob.glob(os.path.join(a.root, "docs",
                                                      "*.md"))))
    errors, blocks = [], []
    for p in pages:
        blocks += parse(p, os.path.relpath(p, a.root), errors)
    for e in errors:
        print("FAIL  " + e)
    c = Checker(a)
    t0 = time.time()
    c.check(blocks)
    n_c = sum(1 for b in blocks if b.kind != "python")
    bad = len(errors) + len(c.failures)
    print("%d C blocks in %d pages: %d failed, %d not checked here (%.1f s)"
          % (n_c, len(pages), bad, c.notes, time.time() - t0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
