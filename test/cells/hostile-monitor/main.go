// Command hostile-monitor is an adversarial test cell: the shared hostile binary
// (package attack) under the manifest in this directory. See
// test/cells/README.md; it refuses to run outside a fresh pid namespace.
package main

import "github.com/trustcells/tcc/test/cells/attack"

func main() { attack.Main() }
