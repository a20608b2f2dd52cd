-- A list's entries as one blob per list, lines of `NETWORK` or `NETWORK<TAB>NOTE` (an address
-- written bare for /32 and /128): a CERT list of millions of addresses is one row to write
-- and one to read, not millions of rows and their index.
CREATE TABLE ip_list_data (
    list_id        INTEGER PRIMARY KEY REFERENCES ip_lists(id),
    entries        BLOB NOT NULL
);
INSERT INTO ip_list_data (list_id, entries)
SELECT list_id,
       CAST(group_concat(
           CASE WHEN note = '' THEN network
                ELSE network || char(9) || replace(replace(note, char(9), ' '), char(10), ' ')
           END, char(10)) || char(10) AS BLOB)
FROM ip_list_entries GROUP BY list_id;
DROP TABLE ip_list_entries;
