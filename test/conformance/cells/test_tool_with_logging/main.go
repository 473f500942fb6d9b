// Command test_tool_with_logging is an MCP conformance fixture cell (see package fixture).
package main

import "github.com/trustcells/tcc/test/conformance/cells/fixture"

func main() { fixture.Main("logging") }
