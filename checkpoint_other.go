//go:build !unix

package proxyhealth

// journalFileID reports no identity where the platform gives no inode: no
// live status checkpoint is written or trusted there.
func journalFileID(string) (fileID, bool) { return fileID{}, false }
