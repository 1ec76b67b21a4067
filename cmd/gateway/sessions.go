package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const sessionsUsage = `Usage: gateway sessions <list|revoke> [flags]

Calls the admin API of a running gateway (admin.listen) with the bearer token
of its admin.token_file:

  gateway sessions list --subject S [--json]   the subject's live sessions
  gateway sessions revoke --id ID              revoke one session
  gateway sessions revoke --subject S          revoke every session of the subject

Both take --admin URL (default http://127.0.0.1:9090) and --token-file FILE.
A revoked session can no longer be refreshed; its access tokens pass until
they expire, unless tokens.revocation = "every_request". Its WebSockets on
the gateway called are closed at once, on other replicas within their
server.upgrade_check_interval.
Run 'gateway sessions list -h' or 'gateway sessions revoke -h' for the flags.
`

// defaultAdminURL is the admin listener of the default configuration.
const defaultAdminURL = "http://127.0.0.1:9090"

// sessionsCmd is the "sessions" command: the admin API's client.
func sessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sessionsUsage)
		return reportedError{usageError{errors.New("sessions: no subcommand")}}
	}
	switch args[0] {
	case "list":
		return sessionsListCmd(ctx, args[1:], stdout, stderr)
	case "revoke":
		return sessionsRevokeCmd(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, sessionsUsage)
		return flag.ErrHelp
	}
	fmt.Fprintf(stderr, "gateway: sessions: unknown subcommand %q\n\n%s", args[0], sessionsUsage)
	return reportedError{usageError{fmt.Errorf("sessions: unknown subcommand %q", args[0])}}
}

// adminFlags are the flags every sessions subcommand takes.
type adminFlags struct {
	admin, tokenFile *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		admin:     fs.String("admin", defaultAdminURL, "the gateway's admin listener `URL`"),
		tokenFile: fs.String("token-file", "", "the `FILE` holding the admin token (admin.token_file)"),
	}
}

// client checks the flags and returns a client of the admin API.
func (f adminFlags) client(cmd string) (*adminClient, error) {
	if *f.tokenFile == "" {
		return nil, usageError{fmt.Errorf("%s: --token-file FILE is required", cmd)}
	}
	u, err := url.Parse(*f.admin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("%s: --admin %q is not an http:// or https:// URL", cmd, *f.admin)}
	}
	token, err := LoadAdminToken(*f.tokenFile)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: --token-file: %w", cmd, err)}
	}
	return &adminClient{base: u, token: string(token), http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func sessionsListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sessions list", "sessions list --subject S [--json] [--admin URL] --token-file FILE",
		"Lists the subject's live sessions, oldest first, from a running gateway's\n"+
			"admin API: a table, or with --json the API's JSON array.", stderr)
	af := addAdminFlags(fs)
	subject := fs.String("subject", "", "the `subject` (user) whose sessions to list")
	asJSON := fs.Bool("json", false, "print the JSON array of the admin API")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *subject == "" {
		return usageError{errors.New("sessions list: --subject S is required")}
	}
	c, err := af.client("sessions list")
	if err != nil {
		return err
	}
	body, err := c.do(ctx, http.MethodGet, "/admin/sessions", url.Values{"subject": {*subject}}, http.StatusOK)
	if err != nil {
		return fmt.Errorf("sessions list: %w", err)
	}
	var list []sessionView
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("sessions list: admin API answer: %w", err)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no live sessions of %q\n", *subject)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tCREATED\tREFRESHED\tIDLE EXPIRES\tEXPIRES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.SessionID, s.CreatedAt, s.RefreshedAt, s.IdleExpiresAt, s.ExpiresAt)
	}
	return tw.Flush()
}

func sessionsRevokeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sessions revoke", "sessions revoke (--id ID | --subject S) [--admin URL] --token-file FILE",
		"Revokes one session, or every session of a subject, on a running gateway:\n"+
			"they can no longer be refreshed. Exits 1 if the session ID is unknown.", stderr)
	af := addAdminFlags(fs)
	id := fs.String("id", "", "the session `ID` to revoke (see sessions list)")
	subject := fs.String("subject", "", "revoke every session of this `subject`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*id == "") == (*subject == "") {
		return usageError{errors.New("sessions revoke: give exactly one of --id ID or --subject S")}
	}
	c, err := af.client("sessions revoke")
	if err != nil {
		return err
	}
	if *id != "" {
		if _, err := c.do(ctx, http.MethodDelete, "/admin/sessions/"+url.PathEscape(*id), nil, http.StatusNoContent); err != nil {
			return fmt.Errorf("sessions revoke: %w", err)
		}
		fmt.Fprintf(stdout, "revoked session %s\n", *id)
		return nil
	}
	body, err := c.do(ctx, http.MethodDelete, "/admin/sessions", url.Values{"subject": {*subject}}, http.StatusOK)
	if err != nil {
		return fmt.Errorf("sessions revoke: %w", err)
	}
	var res struct {
		Revoked int `json:"revoked"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("sessions revoke: admin API answer: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %d sessions of %q\n", res.Revoked, *subject)
	return nil
}

// adminClient calls the admin API. token is sent, never printed.
type adminClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

// errAdminStatus is the error of an admin API answer other than the one
// expected.
var errAdminStatus = errors.New("admin API refused the request")

// do sends the request and returns the body of an answer with status want;
// any other status is an error wrapping errAdminStatus that names it and the
// API's error code.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, want int) ([]byte, error) {
	target := strings.TrimRight(c.base.String(), "/") + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read admin API answer: %w", err)
	}
	if res.StatusCode == want {
		return body, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &e)
	switch res.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: 401 unauthorized (is --token-file the gateway's admin.token_file?)", errAdminStatus)
	case http.StatusNotFound:
		if e.Error == "not_found" {
			return nil, fmt.Errorf("%w: 404 no such session", errAdminStatus)
		}
		return nil, fmt.Errorf("%w: 404 (is admin.token_file set on the gateway?)", errAdminStatus)
	}
	if e.Error != "" {
		return nil, fmt.Errorf("%w: %s %s", errAdminStatus, res.Status, e.Error)
	}
	return nil, fmt.Errorf("%w: %s", errAdminStatus, res.Status)
}
