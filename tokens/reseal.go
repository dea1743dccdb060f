package tokens

import (
	"context"
	"errors"
	"fmt"
)

// ErrSameMasterKey: a rotation to the key already in use.
var ErrSameMasterKey = errors.New("the new master key is the current one")

// ErrResealConflict: the sealed rows changed between reading and re-sealing
// them (a signing key added, a first start storing a secret); nothing was
// written.
var ErrResealConflict = errors.New("the sealed rows changed while they were being re-sealed")

// ResealPlan is a master-key rotation as the store writes it (Reseal):
// every sealed row's seal as read and its seal under the new key.
type ResealPlan struct {
	SigningKeys []Reseal // Name is the kid
	Secrets     []Reseal // Name is the secret's name
}

// Reseal is one row of a ResealPlan. Old and New are equal for a row that
// is sealed under the new key already: named so that the plan names every
// row, and left as it is.
type Reseal struct {
	Name     string
	Old, New []byte
}

// Rotation is what RotateMasterKey did.
type Rotation struct {
	// SigningKeys and Secrets count the rows it re-sealed.
	SigningKeys, Secrets int
	// Already counts the rows it found sealed under the new key before it
	// wrote: all of them when a rotation that committed is run again.
	Already int
}

// maxResealPasses bounds how often RotateMasterKey plans again after the
// rows changed underneath it.
const maxResealPasses = 3

// RotateMasterKey re-seals every signing key and every sealed secret in st,
// sealed under current, under next, in one transaction of the store. It
// first opens every row, so that a wrong current key fails with ErrSealed
// before anything is written. A row already sealed under next is left as it
// is: run again after a rotation that committed, it changes nothing and
// succeeds. When the rows changed meanwhile (ErrResealConflict), it plans
// again; after each commit it reads every row once more, so that it returns
// only when all of them open with next.
func RotateMasterKey(ctx context.Context, st SealedStore, current, next MasterKey) (Rotation, error) {
	if current.Equal(next) {
		return Rotation{}, ErrSameMasterKey
	}
	var done Rotation
	for range maxResealPasses {
		plan, pass, err := planReseal(ctx, st, current, next)
		if err != nil {
			return done, err
		}
		if done.SigningKeys+done.Secrets == 0 {
			done.Already = pass.Already // found so before this call wrote
		}
		if pass.SigningKeys+pass.Secrets == 0 {
			return done, nil
		}
		switch err := st.Reseal(ctx, plan); {
		case errors.Is(err, ErrResealConflict):
			continue
		case err != nil:
			return done, err
		}
		done.SigningKeys += pass.SigningKeys
		done.Secrets += pass.Secrets
	}
	return done, fmt.Errorf("%w %d times running: stop other key commands and run it again", ErrResealConflict, maxResealPasses)
}

// planReseal reads every sealed row and seals it again under next.
func planReseal(ctx context.Context, st SealedStore, current, next MasterKey) (ResealPlan, Rotation, error) {
	var plan ResealPlan
	var n Rotation
	// reseal opens a row with current and seals it under next, or finds it
	// sealed under next already.
	reseal := func(name string, sealed, aad []byte, count *int) (Reseal, error) {
		if pt, err := current.open(sealed, aad); err == nil {
			*count++
			return Reseal{Name: name, Old: sealed, New: next.seal(pt, aad)}, nil
		}
		if _, err := next.open(sealed, aad); err == nil {
			n.Already++
			return Reseal{Name: name, Old: sealed, New: sealed}, nil
		}
		return Reseal{}, ErrSealed
	}
	recs, err := st.ListSigningKeys(ctx)
	if err != nil {
		return plan, n, err
	}
	for _, r := range recs {
		rs, err := reseal(r.KID, r.Sealed, sealAAD(r), &n.SigningKeys)
		if err != nil {
			return plan, n, fmt.Errorf("signing key %s: %w", r.KID, err)
		}
		plan.SigningKeys = append(plan.SigningKeys, rs)
	}
	secrets, err := st.ListSealedSecrets(ctx)
	if err != nil {
		return plan, n, err
	}
	for _, s := range secrets {
		aad := secretAAD(s.Name)
		if s.Placeholder() {
			if s.Name != RefreshMACSecret {
				return plan, n, fmt.Errorf("sealed secret %s: a placeholder keygate cannot fill", s.Name)
			}
			// The key the placeholder stands for, stored at last: under
			// the new master key it can no longer be derived.
			n.Secrets++
			plan.Secrets = append(plan.Secrets, Reseal{Name: s.Name, Old: s.Sealed, New: next.seal(current.derivedMAC, aad)})
			continue
		}
		rs, err := reseal(s.Name, s.Sealed, aad, &n.Secrets)
		if err != nil {
			return plan, n, fmt.Errorf("sealed secret %s: %w", s.Name, err)
		}
		plan.Secrets = append(plan.Secrets, rs)
	}
	return plan, n, nil
}
