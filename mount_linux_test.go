package main_test

import "syscall"

// mountTmpfs mounts a tmpfs of the given size (e.g. "8m") on dir: a small
// volume to fill. It needs root (or CAP_SYS_ADMIN).
func mountTmpfs(dir, size string) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700")
}

func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }
