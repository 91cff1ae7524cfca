package etcdtest

import "syscall"

// sysProcAttr makes the kernel kill etcd when the process that started it
// dies, so a crashed test leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
