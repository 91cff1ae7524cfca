package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (check failed, journal damaged, ...)
	exitUsage   = 2 // bad command line or configuration: nothing was started
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the monitoring daemon with its HTTP API and dashboard", runDaemon},
		{"demo", "monitor a built-in farm of fake proxies and open the dashboard (no config)", runDemo},
		{"status", "show the pool summary from a running daemon or a data directory", runStatus},
		{"check", "check one proxy once and show the latency breakdown", runCheck},
		{"journal", "audit trail: replay, verify, summarise or salvage the event journal", runJournal},
		{"rebuild", "rebuild view.db from the journal", runRebuild},
		{"version", "print the version", runVersion},
	}
}

const mainUsage = `proxyhealth continuously health-checks pools of HTTP, HTTPS and SOCKS proxies.

Usage:
  proxyhealth COMMAND [flags]

Commands:
%s
Run 'proxyhealth COMMAND --help' for a command's flags and examples.

Examples:
  proxyhealth demo                               # a live pool of fake proxies, in the browser
  proxyhealth run --proxies residential.txt      # monitor the proxies listed in a file
  proxyhealth status                             # summary from the daemon on 127.0.0.1:9480
  proxyhealth check socks5://10.0.0.7:1080       # check one proxy now
  proxyhealth journal replay --data ./proxyhealth-data --type state_changed
`

// run dispatches to a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "proxyhealth: missing command; run 'proxyhealth --help' to list them (try 'proxyhealth demo')")
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		var b strings.Builder
		for _, c := range commands() {
			fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(stdout, mainUsage, b.String())
		return exitOK
	case "-version", "--version":
		return runVersion(ctx, nil, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "proxyhealth: unknown command %q; run 'proxyhealth --help' to list them\n", args[0])
	return exitUsage
}

// flagSet is a subcommand's flags with its usage text.
type flagSet struct {
	*flag.FlagSet
	usage   string // "Usage: ..." and description, before the flags
	example string
	stdout  io.Writer
	stderr  io.Writer
}

func newFlagSet(name, usage, example string, stdout, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("proxyhealth "+name, flag.ContinueOnError), usage: usage, example: example, stdout: stdout, stderr: stderr}
	fs.SetOutput(io.Discard)
	return fs
}

// printUsage writes the full help to stdout.
func (fs *flagSet) printUsage() {
	fmt.Fprintln(fs.stdout, strings.TrimSpace(fs.usage))
	fmt.Fprintln(fs.stdout, "\nFlags:")
	fs.SetOutput(fs.stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if fs.example != "" {
		fmt.Fprintln(fs.stdout, "\nExamples:")
		fmt.Fprintln(fs.stdout, strings.TrimRight(fs.example, "\n"))
	}
}

// parse parses args, allowing flags after positional arguments. It returns
// the positional arguments, or an exit code when parsing ended the command
// (help: 0; error: 2, with one line on stderr).
func (fs *flagSet) parse(args []string) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printUsage()
				return nil, exitOK, false
			}
			return nil, fs.fail("%v", err), false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// fail prints one usage error line and returns exitUsage.
func (fs *flagSet) fail(format string, a ...any) int {
	fmt.Fprintf(fs.stderr, "%s: %s (see '%s --help')\n", fs.Name(), fmt.Sprintf(format, a...), fs.Name())
	return exitUsage
}

// isSet reports whether a flag was given on the command line.
func (fs *flagSet) isSet(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// choiceFlag is a string flag restricted to a set of values.
type choiceFlag struct {
	value   string
	choices []string
}

func (c *choiceFlag) String() string { return c.value }
func (c *choiceFlag) Set(v string) error {
	for _, ch := range c.choices {
		if v == ch {
			c.value = v
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
}

func newChoice(def string, choices ...string) *choiceFlag {
	return &choiceFlag{value: def, choices: choices}
}

// newLogger returns the daemon's logger: text or JSON lines on w.
func newLogger(format string, level slog.Level, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parseLevel parses a log level name.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	if err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// parseTimeArg parses an absolute time (RFC 3339, or a date) or a duration
// meaning "that long ago".
func parseTimeArg(s string, now time.Time) (time.Time, error) {
	t, err := proxyhealth.ParseTime(s, now)
	if err != nil {
		return t, errors.New(strings.TrimPrefix(err.Error(), proxyhealth.ErrBadConfig.Error()+": "))
	}
	return t, nil
}
