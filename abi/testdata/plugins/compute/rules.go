package main

import (
	"bytes"
	"slices"
)

// kind is how a rule looks at the body.
type kind uint8

const (
	contains  kind = iota // pattern anywhere in the lower-cased body
	prefix                // lower-cased body starts with pattern
	control               // a control byte other than \t, \n, \r (0x00-0x1f, 0x7f)
	highBytes             // more than a quarter of the bytes are 0x80 or above
	percent               // at least 8 %XX escapes (hex digits): encoded evasion
	longLine              // a line (bytes between \n) longer than 8 KiB
)

// rule is one entry of the rule set. Patterns are lower case: they are
// matched against the body with ASCII letters lower-cased.
type rule struct {
	id      int
	kind    kind
	pattern string
	score   int
}

// Scores, as the OWASP Core Rule Set grades its rules.
const (
	critical = 5
	errorLvl = 4
	warning  = 3
	notice   = 2
)

// rules is the rule set, 50 rules each run over the whole body; the
// summary lists the ids of those that match in this order.
var rules = []rule{
	// SQL injection.
	{1, contains, "union select", critical},
	{2, contains, "union all select", critical},
	{3, contains, "' or '1'='1", critical},
	{4, contains, "' or 1=1", critical},
	{5, contains, "information_schema", critical},
	{6, contains, "sleep(", critical},
	{7, contains, "benchmark(", critical},
	{8, contains, "waitfor delay", critical},
	{9, contains, "xp_cmdshell", critical},
	{10, contains, "load_file(", critical},
	{11, contains, "into outfile", critical},
	// Cross-site scripting.
	{12, contains, "<script", critical},
	{13, contains, "javascript:", critical},
	{14, contains, "onerror=", critical},
	{15, contains, "onload=", critical},
	{16, contains, "<iframe", critical},
	{17, contains, "<object", critical},
	{18, contains, "document.cookie", critical},
	{19, contains, "alert(", critical},
	{20, contains, "expression(", critical},
	// Path traversal, local files.
	{21, contains, "../", critical},
	{22, contains, `..\`, critical},
	{23, contains, "/etc/passwd", critical},
	{24, contains, "/etc/shadow", critical},
	{25, contains, `c:\windows\`, critical},
	{26, contains, "/proc/self/", critical},
	// Command injection.
	{27, contains, "; cat ", critical},
	{28, contains, "| nc ", critical},
	{29, contains, "$(", critical},
	{30, contains, "`id`", critical},
	{31, contains, "/bin/sh", critical},
	{32, contains, "cmd.exe", critical},
	{33, contains, "powershell", critical},
	{34, contains, "wget http", critical},
	// Code, template and entity injection.
	{35, contains, "${jndi:", errorLvl},
	{36, contains, "<?php", errorLvl},
	{37, contains, "eval(", errorLvl},
	{38, contains, "base64_decode(", errorLvl},
	{39, contains, "<!entity", errorLvl},
	{40, contains, "{{", errorLvl},
	// Server-side request forgery.
	{41, contains, "169.254.169.254", warning},
	{42, contains, "gopher://", warning},
	{43, contains, "file://", warning},
	// Notices.
	{44, contains, "<!--", notice},
	{45, prefix, "<?xml", notice},
	{46, prefix, "pk\x03\x04", warning},
	// Byte classes.
	{47, control, "", warning},
	{48, highBytes, "", warning},
	{49, percent, "", errorLvl},
	{50, longLine, "", notice},
}

// matches reports whether the rule matches body (lower is body with ASCII
// letters lower-cased).
func (r *rule) matches(body, lower []byte) bool {
	switch r.kind {
	case contains:
		return bytes.Contains(lower, []byte(r.pattern))
	case prefix:
		return bytes.HasPrefix(lower, []byte(r.pattern))
	case control:
		for _, c := range body {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return true
			}
		}
	case highBytes:
		n := 0
		for _, c := range body {
			if c >= 0x80 {
				n++
			}
		}
		return n*4 > len(body)
	case percent:
		n := 0
		for i := 0; i+2 < len(body); i++ {
			if body[i] == '%' && isHex(body[i+1]) && isHex(body[i+2]) {
				if n++; n == 8 {
					return true
				}
			}
		}
	case longLine:
		run := 0
		for _, c := range body {
			if c == '\n' {
				run = 0
			} else if run++; run > 8<<10 {
				return true
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// lowerASCII returns b with the ASCII letters A-Z made a-z, in dst's
// array when it is large enough.
func lowerASCII(dst, b []byte) []byte {
	dst = slices.Grow(dst[:0], len(b))[:len(b)]
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst
}
