-- Every change to what a resolved key is made of moves the key epoch, in
-- the same transaction, whoever makes it: keygate, its CLI, or SQL by hand.
-- keygate moves it itself as well; these make the epoch complete, so a
-- serving process's key cache sees a change made behind its back within
-- its epoch check instead of once its entries are old. Only the columns a
-- login reads count (a key's last use, written every minute, does not),
-- and deletes; an insert changes no key that could be cached.
CREATE TRIGGER api_keys_epoch_update
AFTER UPDATE OF id, digest, partner_id, company_id, revoked_at, scopes, expires_at ON api_keys
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_epoch_delete AFTER DELETE ON api_keys
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER partners_epoch_update AFTER UPDATE OF id, name, status, scopes ON partners
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER partners_epoch_delete AFTER DELETE ON partners
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER companies_epoch_update AFTER UPDATE OF id, partner_id, name, status ON companies
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER companies_epoch_delete AFTER DELETE ON companies
BEGIN
    UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
