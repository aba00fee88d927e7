import { DatabasePropertiesSchema, propertyStatements } from '../../../lambdas/shared/database-properties';

const properties = {
  owner: 'app',
  connectionLimit: -1,
  comment: null,
  acl: [{ privilege: 'CONNECT', grantee: 'app', grantable: false }],
  settings: [],
  roleSettings: [],
};

describe('database properties in a manifest', () => {
  it('gives each recorded grant as a GRANT of that privilege, after revoking the defaults', () => {
    // Arrange
    const parsed = DatabasePropertiesSchema.parse(properties);

    // Act
    const statements = propertyStatements(parsed, 'atmr_restored');

    // Assert
    expect(statements.required).toEqual(['REVOKE ALL ON DATABASE "atmr_restored" FROM PUBLIC', 'REVOKE ALL ON DATABASE "atmr_restored" FROM "app"', 'GRANT CONNECT ON DATABASE "atmr_restored" TO "app"']);
  });

  it('refuses a privilege that is not one of a database\'s, which the GRANT would carry unquoted', () => {
    // Arrange: a manifest edited in the bucket
    const edited = { ...properties, acl: [{ privilege: 'CONNECT ON DATABASE atmr_restored TO PUBLIC; DROP DATABASE atmr; --', grantee: 'app', grantable: false }] };

    // Act
    const parsed = DatabasePropertiesSchema.safeParse(edited);

    // Assert
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0].path).toEqual(['acl', 0, 'privilege']);
  });
});
