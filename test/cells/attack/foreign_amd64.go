package attack

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

func init() {
	register("thread-x32", "a syscall through the x32 ABI on a second thread kills the whole cell, not only that thread (the arch guard)", func(Input) (Result, error) {
		return foreignThread("x32 getpid", func() error {
			_, _, e := syscall.Syscall(x32Bit|syscall.SYS_GETPID, 0, 0, 0)
			return errnoErr(e)
		})
	})
	register("thread-int80", "an i386 syscall (int 0x80) on a second thread kills the whole cell, not only that thread (the arch guard)", func(Input) (Result, error) {
		return foreignThread("int 0x80 getpid", int80Getpid)
	})
}

// x32Bit marks an x32 syscall number.
const x32Bit = 0x40000000

func errnoErr(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// int80Getpid runs "mov eax, 20 (i386 getpid); int 0x80; ret" from an
// executable page: the foreign ABI needs an instruction Go does not emit
// (and test/cells/*/ keeps no assembly files).
func int80Getpid() error {
	code, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return err
	}
	copy(code, []byte{0xb8, 0x14, 0x00, 0x00, 0x00, 0xcd, 0x80, 0xc3})
	entry := uintptr(unsafe.Pointer(&code[0]))
	fv := &entry // a Go func value points to a word holding the code address
	fn := *(*func())(unsafe.Pointer(&fv))
	fn()
	return nil
}

// foreignThread makes a foreign-ABI syscall on an OS thread of its own. The
// production filter alone would kill only that thread (libseccomp's
// bad-architecture action); the arch guard kills the process, so reaching
// the report at all means the guard failed.
func foreignThread(what string, call func() error) (Result, error) {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		done <- call()
	}()
	note := "returned"
	select {
	case err := <-done:
		if err != nil {
			note = "returned " + errnoName(err)
		}
	case <-time.After(2 * time.Second):
		note = "its thread never came back"
	}
	// Leave the kernel time to take the whole process down, if it will.
	time.Sleep(200 * time.Millisecond)
	return Result{
		Probes: []Probe{{Target: what + " on a second thread", Allowed: true, Note: note}},
		Detail: fmt.Sprintf("the process survived a foreign-ABI syscall on a second thread (%s)", note),
	}, nil
}
