package sqlite

import (
	"fmt"
	"testing"

	"keygate/keys"
)

// TestKeyCacheStaysBoundedAndWarm: past maxCachedKeys, remembering a key
// pushes out one other, not the whole cache.
func TestKeyCacheStaysBoundedAndWarm(t *testing.T) {
	var c keyCache
	c.forget()
	digest := func(i int) keys.Digest { return keys.Digest([]byte(fmt.Sprintf("%032d", i))) }
	for i := range maxCachedKeys + 10 {
		c.remember(digest(i), keys.Principal{KeyID: fmt.Sprint("key_", i)})
	}
	if len(c.byDigest) != maxCachedKeys || len(c.activeKey) != maxCachedKeys {
		t.Fatalf("cache holds %d digests and %d keys, want %d of each", len(c.byDigest), len(c.activeKey), maxCachedKeys)
	}
	if _, ok := c.byDigest[digest(maxCachedKeys+9)]; !ok || !c.activeKey[fmt.Sprint("key_", maxCachedKeys+9)] {
		t.Error("the key remembered last is not in the cache")
	}
	c.setActive("key_revoked", false)
	if active, ok := c.activeKey["key_revoked"]; !ok || active || len(c.activeKey) != maxCachedKeys {
		t.Errorf("setActive on a full cache: entry %v/%v, %d keys", active, ok, len(c.activeKey))
	}
}
