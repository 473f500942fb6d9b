//go:build !amd64

package attack

import "errors"

func init() {
	for _, name := range []string{"thread-x32", "thread-int80"} {
		register(name, "x86_64 only", func(Input) (Result, error) {
			return Result{}, errors.New("foreign-ABI attacks exist on x86_64 only")
		})
	}
}
